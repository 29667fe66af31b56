from shopkit.migrations import run_env

run_env()
