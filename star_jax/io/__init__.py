"""Reading what a user brings and writing what a job makes.

    video.py     decode, fps resample, resize + centre crop, 4k+1 frames (`load_video`);
                 header + first frame check (`probe_video`)
    manifest.py  InSpatio manifests, depth and cameras aligned to a clip (`load_scene_geometry`);
                 cheap check (`check_manifest_entry`)
    scene_folder.py  InSpatio-World 1.5 scene folders: `load_scene` / `write_scene` (staged),
                 `check_scene_folder` (cheap), `scene_clip` (navigate's reference)
    files.py     atomic writers (temp file, then rename): json, png, npz, mp4

Inference reads its inputs through this package only, so it never pulls in the training data
stack of `data_pipelines/` (which may import `star_jax`, never the reverse).
"""
