"""Entry points: the indexing job, evaluation, trace export and the command line."""
