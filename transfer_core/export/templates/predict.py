"""Predict one image with the exported model. Usage: python predict.py IMAGE"""

import sys

import keras
import numpy as np
import tensorflow as tf

# <generated>: Transfer Lab replaces everything up to </generated> with the run's values.
# CLASS_NAMES are also in labels.txt, one per line, in this order.
CLASS_NAMES = ["cat", "dog"]
INPUT_SIZE = 96
MODEL_FILE = "model.keras"
# </generated>

model = keras.saving.load_model(MODEL_FILE)
# Raw RGB pixels in 0..255: the preprocessing is inside the model.
image = tf.io.decode_image(tf.io.read_file(sys.argv[1]), channels=3, expand_animations=False)
image = tf.image.resize(image, (INPUT_SIZE, INPUT_SIZE), method="bilinear")
image = tf.round(image)  # Whole numbers in 0..255, as the app's pipeline gives.
probabilities = model.predict(image[None], verbose=0)[0]
for index in np.argsort(-probabilities)[:3]:
    print(f"{CLASS_NAMES[index]}: {probabilities[index]:.1%}")
