"""lightning_llm's fixtures for plugin tests (cache_dir, train_cli), installed plugins loaded first."""

pytest_plugins = ["lightning_llm.pytest_plugin"]
