"""Language-model providers and what the built-in agents do with one.

:mod:`.base` holds the contract (typed protocol, messages, completions, usage);
:mod:`.http` the shared HTTP client (retries, timeouts, SSE, one-line errors);
:mod:`.openai` and :mod:`.anthropic` the built-in providers; :mod:`.session` picks
the provider and model of an agent from the ``[llm]`` settings and counts tokens
and cost; :mod:`.prompts`, :mod:`.files` and :mod:`.coding` are the agents' side.
"""
