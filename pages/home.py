"""Home: transfer learning in one screen, and the "Try the demo" path."""

import streamlit as st

from ui import state, widgets

st.title("Transfer Lab")
st.markdown(
    "**Transfer learning** reuses a network that already learned to see (on 1.2 million ImageNet "
    "photos) and teaches only a small new part your classes. You need tens of images per class instead "
    "of thousands, and minutes on a laptop instead of days on a GPU."
)

reused, trained = st.columns(2, border=True)
with reused:
    st.subheader("Reused: the backbone")
    st.markdown(
        "A pretrained convolutional network (MobileNet, EfficientNet, ResNet, ...). Its early blocks detect "
        "edges and colours, its later blocks textures and object parts. Those features are useful for "
        "almost any picture, so we **keep its weights** (frozen)."
    )
with trained:
    st.subheader("Trained: the head")
    st.markdown(
        "A small new classifier on top of the backbone's features: pooling, dropout and one dense layer "
        "with one output per **your** class. It has a few thousand weights, so it learns from little data "
        "and trains in seconds."
    )

st.markdown("#### Three ways to train, compared on the same data")
extraction, finetune, scratch = st.columns(3)
extraction.markdown(
    "**Feature extraction**  \nBackbone frozen; its features are computed once and only the head trains. "
    "Fastest, and hard to overfit."
)
finetune.markdown(
    "**Fine-tuning**  \nFirst train the head, then unfreeze the top blocks and train on with a low learning "
    "rate. Adapts the features to your images; usually the most accurate."
)
scratch.markdown(
    "**From scratch**  \nThe same network with random weights: no transfer. Shows what the pretrained "
    "weights are worth, especially with little data."
)

st.divider()
st.subheader("Try it")
demo, own = st.columns(2)
with demo:
    st.markdown(
        "The demo makes a small picture set (circles, stripes, checkerboards, triangles), picks a tiny "
        "pretrained backbone and fast settings, and takes you to training. About a minute on a laptop CPU."
    )
    if st.button("Try the demo", key="home_try_demo", type="primary"):
        with st.spinner("Making the demo data set..."):
            explanation = widgets.start_demo()
        state.set_notice(f"Demo data set ready. {explanation} Press **Start training**.", "success")
        st.switch_page("pages/train.py")
with own:
    st.markdown("Or bring your own images: upload a few per class, a ZIP of folders, or use a server folder.")
    st.page_link("pages/data.py", label="Go to Data", icon=":material/photo_library:")
