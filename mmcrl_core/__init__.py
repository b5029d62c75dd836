"""mmcrl: causal representation learning from multimodal biomedical observations.

The library behind the app, the CLI (`python -m mmcrl_core`) and the Python API. Nothing in this
package imports Streamlit.
"""

__version__ = "0.1.0"
