//! Semantic checks of a typed [`Config`]: positive sizes and rates, consistent model names,
//! a supported schedule, loss and transform pipeline. Every problem is reported at once.

use super::*;

impl Config {
    /// Checks the values; the error lists every problem, each naming its key.
    pub fn validate(&self) -> Result<()> {
        let mut errs = Vec::new();
        self.check_global(&mut errs);
        self.check_fp16(&mut errs);
        self.check_model(&mut errs);
        self.check_optim(&mut errs);
        self.check_data(&mut errs);
        self.check_eval(&mut errs);
        if errs.is_empty() {
            return Ok(());
        }
        bail!("invalid config:\n  - {}", errs.join("\n  - "))
    }

    fn check_global(&self, errs: &mut Vec<String>) {
        let g = &self.global;
        positive(errs, "Global.epochs", g.epochs);
        positive(errs, "Global.save_interval", g.save_interval);
        positive(errs, "Global.print_batch_step", g.print_batch_step);
        if g.eval_during_train {
            positive(errs, "Global.eval_interval", g.eval_interval);
        }
        if g.accum_steps != 1 {
            errs.push(format!(
                "Global.accum_steps: {} is not supported (gradient accumulation: use 1)",
                g.accum_steps
            ));
        }
        if g.max_train_step == Some(0) {
            errs.push("Global.max_train_step: must be positive (or null for no limit)".into());
        }
    }

    fn check_fp16(&self, errs: &mut Vec<String>) {
        let Some(f) = &self.fp16 else { return };
        let s = &f.grad_scaler;
        let p = "FP16.GradScaler";
        if !(s.init_loss_scaling > 0.0 && s.init_loss_scaling <= s.max_loss_scaling) {
            errs.push(format!(
                "{p}.init_loss_scaling: {} must be in (0, max_loss_scaling = {}]",
                s.init_loss_scaling, s.max_loss_scaling
            ));
        }
        if s.incr_ratio.is_nan() || s.incr_ratio <= 1.0 {
            errs.push(format!("{p}.incr_ratio: {} must be > 1", s.incr_ratio));
        }
        if !(s.decr_ratio > 0.0 && s.decr_ratio < 1.0) {
            errs.push(format!(
                "{p}.decr_ratio: {} must be in (0, 1)",
                s.decr_ratio
            ));
        }
        positive(
            errs,
            &format!("{p}.incr_every_n_steps"),
            s.incr_every_n_steps,
        );
        positive(
            errs,
            &format!("{p}.decr_every_n_nan_or_inf"),
            s.decr_every_n_nan_or_inf,
        );
    }

    fn check_model(&self, errs: &mut Vec<String>) {
        let m = &self.model;
        let b = &m.backbone;
        if m.class_num <= 0 {
            errs.push(format!("Model.class_num: {} must be positive", m.class_num));
        }
        if b.patch_size <= 0 {
            errs.push(format!(
                "Model.backbone.patch_size: {} must be positive",
                b.patch_size
            ));
        }
        match b.kind {
            BackboneType::Custom => {
                if !m.name.ends_with("_linearprobe") {
                    errs.push(format!(
                        "Model.name: {:?} must end with `_linearprobe` (the linear-probe model)",
                        m.name
                    ));
                }
                match (b.embed_dim, b.depth, b.num_heads) {
                    (Some(d), Some(depth), Some(h)) => {
                        if d <= 0 || depth <= 0 || h <= 0 || d % h != 0 {
                            errs.push(format!(
                                "Model.backbone: a custom size needs embed_dim, depth, num_heads \
                                 > 0 with num_heads dividing embed_dim (got {d}, {depth}, {h})"
                            ));
                        }
                    }
                    _ => errs.push(
                        "Model.backbone: type custom needs embed_dim, depth and num_heads".into(),
                    ),
                }
            }
            kind => {
                let want = format!("{}_linearprobe", kind.passl_name());
                let alt = want.replace("gaint2", "giant2");
                if m.name != want && m.name != alt {
                    errs.push(format!(
                        "Model.name: {:?} does not match Model.backbone.type {} (expected {want:?})",
                        m.name,
                        kind.passl_name()
                    ));
                }
                for (key, v) in [("embed_dim", b.embed_dim), ("depth", b.depth)] {
                    if v.is_some() {
                        errs.push(format!(
                            "Model.backbone.{key}: only for type custom ({} has its own)",
                            kind.passl_name()
                        ));
                    }
                }
            }
        }
        if let Some(h) = b.num_heads
            && h <= 0
        {
            errs.push(format!("Model.backbone.num_heads: {h} must be positive"));
        }
        if let Some(s) = b.img_size
            && (s <= 0 || (b.patch_size > 0 && s % b.patch_size != 0))
        {
            errs.push(format!(
                "Model.backbone.img_size: {s} must be a positive multiple of patch_size {}",
                b.patch_size
            ));
        }
        if let Some(r) = b.num_register_tokens
            && r < 0
        {
            errs.push(format!(
                "Model.backbone.num_register_tokens: {r} must be >= 0"
            ));
        }
        if b.n_last_blocks < 1 {
            errs.push(format!(
                "Model.backbone.n_last_blocks: {} must be >= 1",
                b.n_last_blocks
            ));
        }
        if self.linear_eval.protocol == ProbeProtocol::Passl
            && (b.n_last_blocks != 1 || !b.avgpool_patchtokens)
        {
            errs.push(format!(
                "Model.backbone: the passl protocol's head reads the last block's CLS and mean \
                 patch token, so n_last_blocks must be 1 and avgpool_patchtokens true (got {}, \
                 {}); use LinearEval.protocol dinov2 for other combinations",
                b.n_last_blocks, b.avgpool_patchtokens
            ));
        }
        if let Some(o) = b.output_dim
            && o < 0
        {
            errs.push(format!("Model.backbone.output_dim: {o} must be >= 0"));
        }
    }

    fn check_optim(&self, errs: &mut Vec<String>) {
        let s = &self.lr_scheduler;
        if !(s.learning_rate > 0.0 && s.learning_rate.is_finite()) {
            errs.push(format!(
                "LRScheduler.learning_rate: {} must be positive",
                s.learning_rate
            ));
        }
        if !(s.eta_min >= 0.0 && s.eta_min <= s.learning_rate) {
            errs.push(format!(
                "LRScheduler.eta_min: {} must be in [0, learning_rate]",
                s.eta_min
            ));
        }
        if s.warmup_start_lr.is_nan() || s.warmup_start_lr < 0.0 {
            errs.push(format!(
                "LRScheduler.warmup_start_lr: {} must be >= 0",
                s.warmup_start_lr
            ));
        }
        if s.warmup_epoch > self.global.epochs {
            errs.push(format!(
                "LRScheduler.warmup_epoch: {} is longer than Global.epochs {}",
                s.warmup_epoch, self.global.epochs
            ));
        }
        if s.name == SchedulerName::CosineAnnealing {
            if s.decay_unit != Unit::Step {
                errs.push(
                    "LRScheduler.decay_unit: CosineAnnealing is dinov2's per-iteration schedule \
                     and needs `step`"
                        .into(),
                );
            }
            if s.warmup_epoch != 0 {
                errs.push(
                    "LRScheduler.warmup_epoch: CosineAnnealing has no warm-up (use 0)".into(),
                );
            }
        }
        let o = &self.optimizer;
        if !(0.0..1.0).contains(&o.momentum) {
            errs.push(format!(
                "Optimizer.momentum: {} must be in [0, 1)",
                o.momentum
            ));
        }
        if o.weight_decay.is_nan() || o.weight_decay < 0.0 {
            errs.push(format!(
                "Optimizer.weight_decay: {} must be >= 0",
                o.weight_decay
            ));
        }
        for (name, terms) in [
            ("Train", Some(&self.loss.train)),
            ("Eval", self.loss.eval.as_ref()),
        ] {
            let Some(terms) = terms else { continue };
            match terms.as_slice() {
                [LossTerm::CELoss(c)] if c.weight > 0.0 && c.weight.is_finite() => {}
                [LossTerm::CELoss(c)] => errs.push(format!(
                    "Loss.{name}.0.CELoss.weight: {} must be positive",
                    c.weight
                )),
                _ => errs.push(format!(
                    "Loss.{name}: exactly one term (`- CELoss: {{weight: 1.0}}`) is supported, \
                     got {}",
                    terms.len()
                )),
            }
        }
    }

    fn check_data(&self, errs: &mut Vec<String>) {
        for (name, d) in [
            ("Train", &self.data_loader.train),
            ("Eval", &self.data_loader.eval),
        ] {
            positive(
                errs,
                &format!("DataLoader.{name}.sampler.batch_size"),
                d.sampler.batch_size,
            );
            if d.dataset.split.as_deref() == Some("") {
                errs.push(format!(
                    "DataLoader.{name}.dataset.split: must not be empty"
                ));
            }
        }
        if let Err(e) = self.train_transform() {
            errs.push(e.to_string());
        }
        if let Err(e) = self.eval_transform() {
            errs.push(e.to_string());
        }
    }

    fn check_eval(&self, errs: &mut Vec<String>) {
        let classes = usize::try_from(self.model.class_num).unwrap_or(0);
        if let Some(m) = &self.metric {
            for (name, terms) in [("Train", &m.train), ("Eval", &m.eval)] {
                for (i, MetricTerm::TopkAcc(t)) in terms.iter().flatten().enumerate() {
                    let p = format!("Metric.{name}.{i}.TopkAcc.topk");
                    if t.topk.is_empty() {
                        errs.push(format!("{p}: must list at least one k"));
                    }
                    if let Some(k) = t.topk.iter().find(|&&k| k == 0 || k > classes) {
                        errs.push(format!("{p}: k = {k} must be in 1..={classes} (class_num)"));
                    }
                }
            }
        }
        let l = &self.linear_eval;
        if l.protocol == ProbeProtocol::Dinov2 {
            if l.n_last_blocks_list.is_empty() || l.n_last_blocks_list.contains(&0) {
                errs.push("LinearEval.n_last_blocks_list: must be non-empty, each >= 1".into());
            }
            if let (Some(depth), Some(&n)) =
                (self.model.backbone.depth, l.n_last_blocks_list.iter().max())
                && n as i64 > depth
            {
                errs.push(format!(
                    "LinearEval.n_last_blocks_list: {n} blocks but the backbone has {depth}"
                ));
            }
            if l.avgpool_list.is_empty() {
                errs.push("LinearEval.avgpool_list: must be non-empty".into());
            }
            if l.learning_rates.is_empty()
                || l.learning_rates
                    .iter()
                    .any(|&r| !(r > 0.0 && r.is_finite()))
            {
                errs.push("LinearEval.learning_rates: must be non-empty, each positive".into());
            }
            positive(errs, "LinearEval.lr_scaling_batch", l.lr_scaling_batch);
        }
        let k = &self.knn;
        if k.enabled {
            if k.nb_knn.is_empty() || k.nb_knn.contains(&0) {
                errs.push("KNN.nb_knn: must be non-empty, each >= 1".into());
            }
            if !(k.temperature > 0.0 && k.temperature.is_finite()) {
                errs.push(format!(
                    "KNN.temperature: {} must be positive",
                    k.temperature
                ));
            }
            positive(errs, "KNN.batch_size", k.batch_size);
        }
    }
}

fn positive(errs: &mut Vec<String>, key: &str, v: u64) {
    if v == 0 {
        errs.push(format!("{key}: must be positive"));
    }
}
