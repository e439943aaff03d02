"""Run the pack's workflows on a ComfyUI server from the command line (scripts/style_suite.py).

Standard library only: the client runs from any Python 3.10+, without torch or ComfyUI installed.
"""
