"""Reports: Markdown for pull requests, one self-contained HTML file (no network) with plots."""
