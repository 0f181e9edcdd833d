"""The Streamlit app: `streamlit run app.py` or `autohm app`. The page lives in autohm/app.py,
so that it is installed with the package."""

from autohm.app import main

main()
