"""Core orchestration: models, planner, graph builder, engine, stores."""
