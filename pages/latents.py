"""Latents page (being built)."""

import streamlit as st

st.title("Latents")
st.info("This page is being built; its work is tracked in the project's issues.")
