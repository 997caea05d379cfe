"""A browser session's world: its workspace and choices, project files, presets, the teacher's
class view. No TensorFlow, no Streamlit.
"""
