"""Ask: natural-language questions answered in SQL over the store or a target, guarded
(docs/ask.md). `answer.ask` answers one; `cli.ask_and_print` asks and prints several."""
