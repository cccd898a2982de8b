"""dinov2's own training code (PyPI `dinov2`) in one process without FSDP and xFormers, for the
reference runs that stand next to ours: scripts/reference_learning_check.py (the digits learning
check on the CPU) and bench/reference_ssl_step.py (the timed pretraining step, CPU or GPU).

`install(device)` patches the package; the math stays that of the GPU/FSDP/xFormers path:
  * dinov2.layers/loss/models are imported BEFORE a stub `xformers` module is put in sys.modules, so
    those modules see XFORMERS_AVAILABLE=False (plain attention, torch iBOT cross-entropy). The stub
    only provides fmha.BlockDiagonalMask.from_tensor_list/split, used by SSLMetaArch.forward_backward
    to run the (token-wise) DINO head once over [local cls | global cls | masked patches]: cat along
    dim 1 / split.
  * with sdpa=True, Attention.forward is torch's scaled_dot_product_attention (the kernel xFormers'
    memory-efficient attention stands for on a GPU; same scale 1/sqrt(head_dim), no dropout) instead
    of the package's explicit softmax(q k^T) v.
  * NestedTensorBlock.forward on a list: loop over list elements; in training with drop_path>0 use
    drop_add_residual_stochastic_depth per element (batch-subset stochastic depth, scale b/subset,
    layerscale gamma applied to the residual) == what xFormers' drop_add_residual_stochastic_depth_list
    + scaled_index_add does with a block-diagonal attention bias.
  * on the CPU Tensor.cuda -> identity; fsdp_synchronize_streams -> no-op; no FSDP wrap:
    teacher <- student state_dict copy (as prepare_for_distributed_training does), EMA over all
    parameters with torch._foreach_* (update_teacher), per-submodule clipping with
    torch.nn.utils.clip_grad_norm_ (as FSDP.clip_grad_norm_ per submodule).
  * `student.arch: custom` (our configs' extension) becomes `vit_custom` (dinov2's build_model
    takes only names with "vit"): a DinoVisionTransformer of student.embed_dim / depth / num_heads
    with dinov2's NestedTensorBlock + MemEffAttention.
  * fvcore (checkpointing only) is stubbed when it is not installed.
The caller starts a one-process group when it needs one (Sinkhorn-Knopp all-reduces unconditionally).
"""
import sys
import types
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F


def _stub_xformers():
    class _BDM:
        def __init__(self, sizes):
            self.sizes = sizes

        @classmethod
        def from_tensor_list(cls, tl):
            sizes = [t.shape[1] for t in tl]
            return cls(sizes), torch.cat([t.reshape(1, -1, *t.shape[2:]) for t in tl], dim=1)

        def split(self, x):
            return [c for c in torch.split(x, self.sizes, dim=1)]

    xf = types.ModuleType("xformers")
    xops = types.ModuleType("xformers.ops")
    xops.fmha = types.SimpleNamespace(BlockDiagonalMask=_BDM)
    xf.ops = xops
    sys.modules["xformers"] = xf
    sys.modules["xformers.ops"] = xops


def _stub_fvcore():
    try:
        import fvcore  # noqa: F401
        return
    except ImportError:
        pass
    fv = types.ModuleType("fvcore")
    fvc = types.ModuleType("fvcore.common")
    fvcc = types.ModuleType("fvcore.common.checkpoint")
    fvcc.Checkpointer = type("Checkpointer", (), {})
    fvcc.PeriodicCheckpointer = type("PeriodicCheckpointer", (), {})
    fv.common = fvc
    fvc.checkpoint = fvcc
    sys.modules.update({"fvcore": fv, "fvcore.common": fvc, "fvcore.common.checkpoint": fvcc})


def _sdpa_forward(self, x):
    B, N, C = x.shape
    qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
    x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2],
                                       dropout_p=self.attn_drop.p if self.training else 0.0)
    x = x.transpose(1, 2).reshape(B, N, C)
    return self.proj_drop(self.proj(x))


def install(device="cpu", sdpa=False):
    """Patches the dinov2 package as described above; returns the SSLMetaArch class."""
    # 1) the parts that must NOT see xformers
    import dinov2.layers, dinov2.loss, dinov2.models  # noqa: F401
    from dinov2.layers import block as dblock
    from dinov2.layers import MemEffAttention, NestedTensorBlock
    from dinov2.layers.attention import Attention
    import dinov2.models.vision_transformer as vits
    assert not dblock.XFORMERS_AVAILABLE

    # 2) stubs for ssl_meta_arch and dinov2.train
    _stub_xformers()
    _stub_fvcore()
    import dinov2.train.ssl_meta_arch as sma
    from dinov2.train.ssl_meta_arch import SSLMetaArch

    # 3) patches
    if sdpa:
        Attention.forward = _sdpa_forward

    def nested_forward(self, x_or_list):
        out = []
        for x in x_or_list:
            if self.training and self.sample_drop_ratio > 0.0:
                x = dblock.drop_add_residual_stochastic_depth(
                    x, residual_func=lambda y: self.ls1(self.attn(self.norm1(y))),
                    sample_drop_ratio=self.sample_drop_ratio)
                x = dblock.drop_add_residual_stochastic_depth(
                    x, residual_func=lambda y: self.ls2(self.mlp(self.norm2(y))),
                    sample_drop_ratio=self.sample_drop_ratio)
            else:
                x = x + self.ls1(self.attn(self.norm1(x)))
                x = x + self.ls2(self.mlp(self.norm2(x)))
            out.append(x)
        return out

    orig_fwd = NestedTensorBlock.forward

    def block_forward(self, x):
        if isinstance(x, list):
            return nested_forward(self, x)
        return orig_fwd(self, x)

    NestedTensorBlock.forward = block_forward
    if device == "cpu":
        torch.Tensor.cuda = lambda self, *a, **k: self
    SSLMetaArch.fsdp_synchronize_streams = lambda self: None
    sma.reshard_fsdp_model = lambda m: None

    def update_teacher(self, m):
        with torch.no_grad():
            sp, tp = [], []
            for k in self.student.keys():
                sp += list(self.student[k].parameters())
                tp += list(self.teacher[k].parameters())
            torch._foreach_mul_(tp, m)
            torch._foreach_add_(tp, sp, alpha=1 - m)

    SSLMetaArch.update_teacher = update_teacher

    def custom(cfg_student, **kw):
        return vits.DinoVisionTransformer(
            embed_dim=cfg_student.embed_dim, depth=cfg_student.depth, num_heads=cfg_student.num_heads,
            mlp_ratio=4, block_fn=partial(NestedTensorBlock, attn_class=MemEffAttention), **kw)

    vits._dinov2_rs_custom = custom
    return SSLMetaArch


def config(*layers):
    """dinov2's default config merged with the given dicts / YAML files (later wins), with
    dinov2's scaling rules applied. `student.arch: custom` becomes `vit_custom`, a factory of the
    student's embed_dim / depth / num_heads (see install)."""
    from omegaconf import OmegaConf
    from dinov2.configs import dinov2_default_config
    from dinov2.utils.config import apply_scaling_rules_to_cfg
    import dinov2.models.vision_transformer as vits

    cfg = OmegaConf.create(dinov2_default_config)
    for layer in layers:
        cfg = OmegaConf.merge(cfg, OmegaConf.load(layer) if isinstance(layer, str) else OmegaConf.create(layer))
    if cfg.student.arch == "custom":
        s = cfg.student
        vits.vit_custom = partial(vits._dinov2_rs_custom, types.SimpleNamespace(
            embed_dim=s.embed_dim, depth=s.depth, num_heads=s.num_heads))
        cfg.student.arch = "vit_custom"
    apply_scaling_rules_to_cfg(cfg)
    return cfg


def build(cfg, device="cpu"):
    """SSLMetaArch as prepare_for_distributed_training leaves it, minus FSDP: on `device`,
    teacher = student, in training mode."""
    from dinov2.train.ssl_meta_arch import SSLMetaArch
    model = SSLMetaArch(cfg).to(device)
    for k in model.student.keys():
        model.teacher[k].load_state_dict(model.student[k].state_dict())
    model.train()
    return model


def clip_per_submodule(model, clip):
    for v in model.student.values():
        nn.utils.clip_grad_norm_(v.parameters(), clip)


def data(cfg, root, dtype=torch.float32):
    """train.py's data for `cfg`: an ImageFolder of `root` through DataAugmentationDINO, and
    collate_data_and_cast with the iBOT masks (a function of a list of samples)."""
    import torchvision
    from dinov2.data import DataAugmentationDINO, MaskingGenerator, collate_data_and_cast

    img, ps = cfg.crops.global_crops_size, cfg.student.patch_size
    n_tokens = (img // ps) ** 2
    mask_generator = MaskingGenerator(input_size=(img // ps, img // ps), max_num_patches=0.5 * img // ps * img // ps)
    aug = DataAugmentationDINO(cfg.crops.global_crops_scale, cfg.crops.local_crops_scale, cfg.crops.local_crops_number,
                               global_crops_size=cfg.crops.global_crops_size, local_crops_size=cfg.crops.local_crops_size)
    ds = torchvision.datasets.ImageFolder(root, transform=aug, target_transform=lambda _: ())
    collate = partial(collate_data_and_cast, mask_ratio_tuple=tuple(cfg.ibot.mask_ratio_min_max),
                      mask_probability=cfg.ibot.mask_sample_probability, n_tokens=n_tokens,
                      mask_generator=mask_generator, dtype=dtype)
    return ds, collate
