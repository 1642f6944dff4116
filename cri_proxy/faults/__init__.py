"""Fault injection: rules that make the runtime misbehave on purpose, for test clusters.

rules.py parses and checks a rules file, fields.py its values, book.py decides per call.
The relay applies the decisions; nothing here does I/O beyond reading the rules file.
"""
