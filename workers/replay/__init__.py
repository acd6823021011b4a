"""The replay program: recorded events through candidate models, reports in JSON and Markdown."""
