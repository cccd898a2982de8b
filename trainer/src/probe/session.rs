//! One probe run's model and optimiser state ([`Run`]): the frozen backbone, the classifier
//! heads and their trained parameters with SGD; building it and the backbone's forward pass.

use super::classifiers::{self, Classifier};
use super::settings::ProbeSettings;
use crate::dist::Dist;
use crate::optim::Sgd;
use crate::scaler::LossScaler;
use anyhow::Result;
use model::runtime::autocast;
use model::{DinoVisionTransformer, Take};
use tch::{Tensor, nn};

pub(super) struct Run<'a> {
    pub(super) s: &'a ProbeSettings,
    pub(super) vit: DinoVisionTransformer,
    pub(super) heads_vs: nn::VarStore,
    pub(super) classifiers: Vec<Classifier>,
    /// The trained parameters (classifier order, weight then bias), their VarStore names and
    /// base learning rates.
    pub(super) params: Vec<Tensor>,
    pub(super) param_names: Vec<String>,
    pub(super) param_lr: Vec<f64>,
    pub(super) sgd: Sgd,
    pub(super) scaler: Option<LossScaler>,
    /// Gradient all-reduce overlapped with the backward pass (when distributed).
    pub(super) overlap: Option<crate::dist::GradOverlap>,
}

impl<'a> Run<'a> {
    /// The heads of `classes` classes on `vit` (initialised from the current seed), their
    /// parameters in a fixed order and SGD; every rank starts from rank 0's heads and backbone
    /// (`backbone_vs`).
    pub(super) fn new(
        s: &'a ProbeSettings,
        vit: DinoVisionTransformer,
        backbone_vs: &nn::VarStore,
        classes: i64,
        dist: &Dist,
    ) -> Result<Self> {
        let heads_vs = nn::VarStore::new(s.device);
        let classifiers = classifiers::build(
            &heads_vs.root(),
            &s.protocol,
            vit.config.embed_dim,
            classes,
            s.train.batch_size * dist.world(),
        );
        // Parameters in a fixed order (classifier order, weight then bias).
        let (mut params, mut param_names, mut param_lr) = (Vec::new(), Vec::new(), Vec::new());
        for c in &classifiers {
            let bias = c.head.linear.bs.as_ref().expect("probe heads have a bias");
            params.extend([c.head.linear.ws.shallow_clone(), bias.shallow_clone()]);
            param_names.extend([format!("{}.weight", c.name), format!("{}.bias", c.name)]);
            param_lr.extend([c.lr, c.lr]);
        }
        // Every rank starts from rank 0's heads (and backbone, when it is randomly initialised).
        dist.broadcast_from_main(&params)?;
        dist.broadcast_from_main(&crate::dist::sorted_variables(backbone_vs))?;
        let sgd = Sgd::new(&params, s.momentum, s.weight_decay);
        let order = crate::dist::registration_order(&heads_vs, &params);
        let overlap = dist.grad_overlap(&params, &order)?;
        Ok(Run {
            s,
            vit,
            heads_vs,
            classifiers,
            params,
            param_names,
            param_lr,
            sgd,
            scaler: s.fp16.clone(),
            overlap,
        })
    }

    /// Backbone outputs for the classifiers (frozen, eval mode, no grad).
    pub(super) fn layers(&self, x: &Tensor) -> Result<Vec<model::Intermediate>> {
        let n = classifiers::max_blocks(&self.classifiers);
        let _g = tch::no_grad_guard();
        autocast(self.s.device, self.s.precision, || {
            self.vit
                .get_intermediate_layers(x, &Take::Last(n), false, true)
        })?
    }
}
