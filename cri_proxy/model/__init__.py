"""The model at the bottom: the recorded call and everything the stages say to each other.

Imports nothing else of cri_proxy, and nothing heavier than the standard library, so that
the relay process can use it without loading protobuf or sqlite3.
"""
