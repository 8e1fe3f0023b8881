"""Paper trading: the served model's decisions executed on the backtest's kernel, with a durable ledger."""
