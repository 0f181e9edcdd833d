"""The Streamlit app in a checkout: `streamlit run app.py` (or `autohm app`, which runs
autohm/app/streamlit_app.py, installed with the package). The page is autohm.app.main."""

from autohm.app.main import main

main()
