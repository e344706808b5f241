"""Operations behind the CLI commands: each takes settings, does the work, returns data.

They never print and never exit; the CLI renders what they return.
"""
