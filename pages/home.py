"""Home: transfer learning in one screen, and the "Try the demo" path."""

import streamlit as st

from transfer_core.data import DataError
from transfer_core.data.photo_demo import PhotoDemoError, make_photo_demo
from transfer_core.sessions.classroom import MAX_NICKNAME_LENGTH, read_nickname, save_nickname
from ui import assignments_view, state, widgets

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
demo, photos, own = st.columns(3)
with demo:
    st.markdown(
        "The demo makes a small picture set: a circle, square or triangle on the left or the right (6 "
        "classes). ImageNet features know the shape but not the side, so on Compare fine-tuning clearly "
        "beats feature extraction, and from scratch lags far behind. It picks a tiny pretrained backbone and "
        "fast settings, and takes you to training. About a minute on a laptop CPU."
    )
    if st.button("Try the demo", key="home_try_demo", type="primary"):
        with st.spinner("Making the demo data set..."):
            explanation = widgets.start_demo()
        state.set_notice(f"Demo data set ready. {explanation} Press **Start training**.", "success")
        st.switch_page("pages/train.py")
with photos:
    st.markdown(
        "Real photos: about 400 pictures of ants and bees (the PyTorch tutorial's set), from this server's "
        "demo folder or downloaded once (47 MB)."
    )
    if st.button("Try real photos (ants vs bees)", key="home_try_photos"):
        bar = st.progress(0.0, text="Getting the ants-and-bees photos...")

        def _show_progress(done: int, total: int | None) -> None:
            if total:
                bar.progress(min(done / total, 1.0), text=f"Downloading: {done >> 20} of {total >> 20} MB")

        try:
            photo_demo = make_photo_demo(
                state.workspace().new_dataset_dir("ants-and-bees"), state.settings(), progress=_show_progress
            )
        except (PhotoDemoError, DataError) as error:
            bar.empty()
            st.error(str(error))
        else:
            state.set_active_dataset(photo_demo.spec)
            explanation = widgets.apply_demo_settings()
            state.set_notice(f"Ants-and-bees photos ready. {explanation} Press **Start training**.", "success")
            st.switch_page("pages/train.py")
with own:
    st.markdown("Or bring your own images: upload a few per class, a ZIP of folders, or use a server folder.")
    st.page_link("pages/data.py", label="Go to Data", icon=":material/photo_library:")

assignments_view.student_section()

if state.settings().teacher_token:
    # Only a server with a class view asks for a name: the teacher sees it next to this session's runs.
    st.divider()
    workspace_root = state.workspace().root
    st.text_input(
        "Your nickname (your teacher sees it next to your runs)",
        value=read_nickname(workspace_root),
        max_chars=MAX_NICKNAME_LENGTH,
        key="home_nickname",
        on_change=lambda: save_nickname(workspace_root, st.session_state["home_nickname"]),
    )
