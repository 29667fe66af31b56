from shopkit.database.migrations import run_env

run_env()
