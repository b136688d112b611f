"""Checkers for the notebooks' exercises: one module per notebook. They say what is wrong and give a hint,
never the answer; they print and return True/False and never raise, so a notebook always runs through."""
