"""The fast-weight workbench in the browser, from a checkout: `streamlit run app.py` (reads .streamlit/config.toml
here). The app itself is installed with the package, workbench/streamlit_app/main.py; `workbench app` serves it
from any directory."""

import runpy

from workbench.app_support.launch import APP_SCRIPT

runpy.run_path(str(APP_SCRIPT), run_name="__main__")
