"""What the pages show, as plain data: figures (frame in, figure out), run texts, data set views.

Pure functions: no Streamlit and no TensorFlow, so the web server calls them cheaply.
"""
