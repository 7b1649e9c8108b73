from softmax_exp.main import cli

cli()
