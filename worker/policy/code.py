"""Nodes that run caller-supplied code, and the audit of the locked node set behind the list.

CODE_NODES are the classes node-classes.yaml refuses as `code` (tests/worker/test_code_nodes.py
holds the two in step); ALLOW_CODE_NODES=1 allows them on endpoints that trust their callers.
CALL_SITES records every call of eval, exec, compile, __import__, pickle/marshal loads and
torch.load found in the sources of ComfyUI and the locked custom nodes (and of ast.parse, the
front of an interpreter of caller text such as rgthree's Power Puter), with the verdict for
each: a refused class, or why it is harmless. tests/worker/test_code_nodes.py scans the real
sources and fails when a call site appears that this table does not list, so a node update
that adds one is noticed.
"""

from __future__ import annotations

# class_type -> why a job may not use it by default
CODE_NODES: dict[str, str] = {
    "Sigmas Math1": "RES4LYF: eval()s its formula f1 with torch in scope (torch.os reaches the "
    "shell and the environment)",
    "Sigmas Math3": "RES4LYF: eval()s its formulas f1, f2, f3 with torch in scope",
    "ClownsharKSamplerOptions": "RES4LYF (legacy): t_fn_formula and sigma_fn_formula are "
    "eval()ed by the sampler with torch in scope",
    "SamplerOptions_TimestepScaling": "RES4LYF (legacy): t_fn_formula and sigma_fn_formula are "
    "eval()ed by the sampler with torch in scope",
    "Base64ToConditioning": "RES4LYF: unpickles its `data` input (pickle.loads runs code)",
    "easy simpleMath": "Easy-Use: eval()s its formula; empty __builtins__ do not stop "
    "().__class__.__base__.__subclasses__() escapes",
    "easy simpleMathDual": "Easy-Use: eval()s its two formulas, as easy simpleMath",
    "VisualizeCUDAMemoryHistory": "KJNodes: pickle.load()s the file named by snapshot_path "
    "(a job can upload that file as an image)",
    # Through the worker it stops today before it interprets anything, on the extra_pnginfo
    # the worker does not send (`"workflow" in None`): an accident, not a guard.
    # The worker's input checker refuses literals at non-widget inputs, which closes this too;
    # the class stays refused so a widened endpoint (NODE_CLASSES=all) knows what it allows.
    **{
        name: "RES4LYF (legacy): a literal dict at its `options` input carries t_fn_formula / "
        "sigma_fn_formula, which the sampler eval()s with builtins in scope"
        for name in (
            "ClownSampler",
            "ClownSamplerAdvanced",
            "ClownsharKSampler",
            "Legacy_ClownsharKSampler",
        )
    },
    "Power Puter (rgthree)": "rgthree: interprets its `code` input as Python, with getattr on "
    "any attribute (''.__class__.__mro__[1].__subclasses__() reaches os.popen)",
}

HARMLESS = "harmless"

# (file relative to the ComfyUI folder, enclosing class.function) -> the refused class_type(s)
# that reach it, or HARMLESS + why. Keyed by function, not line, so edits elsewhere in a file
# do not churn the table.
CALL_SITES: dict[tuple[str, str], str] = {
    ("custom_nodes/RES4LYF/sigmas.py", "sigmas_math1.main"): "Sigmas Math1",
    ("custom_nodes/RES4LYF/sigmas.py", "sigmas_math3.main"): "Sigmas Math3",
    ("custom_nodes/RES4LYF/legacy/sigmas.py", "sigmas_math1.main"): f"{HARMLESS}: legacy copy "
    "of Sigmas Math1, not registered (the class name maps to RES4LYF/sigmas.py)",
    ("custom_nodes/RES4LYF/legacy/sigmas.py", "sigmas_math3.main"): f"{HARMLESS}: legacy copy "
    "of Sigmas Math3, not registered",
    (
        "custom_nodes/RES4LYF/legacy/noise_sigmas_timesteps_scaling.py",
        "get_res4lyf_half_step3",
    ): "ClownsharKSamplerOptions, SamplerOptions_TimestepScaling, ClownSampler, "
    "ClownSamplerAdvanced, ClownsharKSampler, Legacy_ClownsharKSampler",
    ("custom_nodes/RES4LYF/conditioning.py", "Base64ToConditioning.main"): "Base64ToConditioning",
    ("custom_nodes/RES4LYF/legacy/conditioning.py", "Base64ToConditioning.main"): f"{HARMLESS}: "
    "legacy copy, not registered (Base64ToConditioning maps to RES4LYF/conditioning.py)",
    ("custom_nodes/RES4LYF/helper.py", "ExtraOptions.__call__"): f"{HARMLESS}: __import__ of "
    "the module of a default value written in the node's code, not of job input",
    ("custom_nodes/ComfyUI-Easy-Use/py/libs/math.py", "evaluate_formula"): "easy simpleMath, "
    "easy simpleMathDual",
    ("custom_nodes/ComfyUI-Easy-Use/py/libs/api/bizyair.py", "base64_to_tensor"): f"{HARMLESS}: "
    "unpickles the BizyAir web service's answer, not job input (the API nodes need a key and "
    "the network)",
    (
        "custom_nodes/ComfyUI-Easy-Use/py/modules/kolors/chatglm/modeling_chatglm.py",
        "ChatGLMForConditionalGeneration.process_response",
    ): f"{HARMLESS}: ChatGLM's chat tool-call parsing; the Kolors nodes only encode text",
    ("custom_nodes/ComfyUI-Easy-Use/py/modules/ben/model.py", "BEN_Base.loadcheckpoints"): (
        f"{HARMLESS}: torch.load of a model file (torch 2.6+ loads weights only)"
    ),
    ("custom_nodes/ComfyUI-Easy-Use/py/nodes/image.py", "imageRemBg.remove"): f"{HARMLESS}: "
    "torch.load of a model file (torch 2.6+ loads weights only)",
    ("custom_nodes/ComfyUI-Easy-Use/py/nodes/inpaint.py", "applyFooocusInpaint.apply"): (
        f"{HARMLESS}: torch.load of a model file (torch 2.6+ loads weights only)"
    ),
    (
        "custom_nodes/ComfyUI-KJNodes/nodes/model_optimization_nodes.py",
        "VisualizeCUDAMemoryHistory.visualize",
    ): "VisualizeCUDAMemoryHistory",
    ("comfy/utils.py", "load_torch_file"): f"{HARMLESS}: weights_only=True",
    ("comfy/sd1_clip.py", "load_embed"): f"{HARMLESS}: weights_only=True",
    (
        "comfy/ldm/modules/encoders/noise_aug_modules.py",
        "CLIPEmbeddingNoiseAugmentation.__init__",
    ): f"{HARMLESS}: a path in ComfyUI's code, not job input",
    ("comfy_extras/nodes_dataset.py", "LoadTrainingDataset.execute"): f"{HARMLESS}: "
    "torch.load of shards in output/, weights only by default since torch 2.6 (the lock pins "
    "2.10); its folder_name is a confined path input",
}

# ast.parse is the front of an interpreter of caller text: the verdict depends on what the
# walk of the tree allows.
_ARITHMETIC = (
    f"{HARMLESS}: walks the parsed formula allowing only numbers, its own variables, operators "
    "and a fixed table of functions (no attribute of an arbitrary object)"
)
CALL_SITES.update(
    {
        ("custom_nodes/rgthree-comfy/py/power_puter.py", "_Puter.execute"): (
            "Power Puter (rgthree)"
        ),
        ("custom_nodes/ComfyUI-Custom-Scripts/py/math_expression.py", "MathExpression.evaluate"): (
            f"{_ARITHMETIC}; an attribute only names a width/height or another node's widget"
        ),
        ("custom_nodes/ComfyUI-KJNodes/nodes/nodes.py", "SimpleCalculatorKJ.calculate"): (
            _ARITHMETIC
        ),
        ("custom_nodes/ComfyUI_essentials/misc.py", "SimpleMath.execute"): _ARITHMETIC,
    }
)

# Frame-Interpolation loads each model's checkpoint (its ckpt_name is a fixed list of names)
# from its own ckpts/ folder; the checkpoints are torch pickles, loaded weights-only by torch
# 2.6+. eisai's Table.render formats its own strings; its pickle `load` is never called by a
# node.
_VFI = "custom_nodes/ComfyUI-Frame-Interpolation/vfi_models/"
_VFI_WHY = (
    f"{HARMLESS}: torch.load of the node's own checkpoint, named from a fixed list "
    "(torch 2.6+ loads weights only)"
)
for _site in (
    "amt/__init__.py:AMT_VFI.vfi",
    "cain/__init__.py:CAIN_VFI.vfi",
    "eisai/__init__.py:EISAI.__init__",
    "eisai/eisai_arch.py:RAFT.__init__",
    "flavr/__init__.py:build_flavr",
    "gmfss_fortuna/GMFSS_Fortuna_arch.py:Model.load_model",
    "gmfss_fortuna/GMFSS_Fortuna_union_arch.py:Model.load_model",
    "ifrnet/__init__.py:IFRNet_VFI.vfi",
    "ifunet/__init__.py:IFUnet_VFI.vfi",
    "m2m/__init__.py:M2M_VFI.vfi",
    "rife/__init__.py:RIFE_VFI.vfi",
    "sepconv/__init__.py:SepconvVFI.vfi",
    "stmfnet/__init__.py:STMFNet_VFI.vfi",
    "xvfi/__init__.py:XVFI_Inference.__init__",
):
    _file, _scope = _site.split(":")
    CALL_SITES[(_VFI + _file, _scope)] = _VFI_WHY
CALL_SITES[(_VFI + "eisai/eisai_arch.py", "load")] = f"{HARMLESS}: a pickle helper no node calls"
CALL_SITES[(_VFI + "eisai/eisai_arch.py", "Table.render")] = (
    f"{HARMLESS}: eval of an f-string built from the table's own format specs"
)
