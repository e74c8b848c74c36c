"""``python -m agent.sync.contract [DIR]``: write the schemas (default ``docs/schemas/``)."""

from agent.sync.contract import main

if __name__ == "__main__":
    main()
