"""What each stage's command prints for people, one module per stage module
(``edgekit.stages``); ``--json`` prints the result's own document instead."""
