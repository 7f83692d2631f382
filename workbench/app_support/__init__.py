"""What the Streamlit app (``workbench/streamlit_app/``: ``main.py`` and ``app_pages/``) is built from: model and sequence sources, the
computations behind each page, session-safe caching and the sidebar widgets. Everything but
``widgets`` and ``caching`` is free of Streamlit and tested with pytest."""
