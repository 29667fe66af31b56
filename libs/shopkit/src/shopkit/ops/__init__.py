"""Operations: the process runtime, settings of roles, logs, metrics, traces, fault classification, the dead-letter tool."""
