"""Look inside a model: predictions and Grad-CAM, embeddings, what the model sees, ImageNet
predictions before transfer, and loading an uploaded Keras file safely.

Worker-side: TensorFlow is imported inside functions; the inference worker calls these for the pages.
"""
