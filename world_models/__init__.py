"""World models that learn from frames alone: the contract and capability protocols
(:mod:`.protocol`), GLASS (:mod:`.glass`), YODA (:mod:`.yoda`), shared layers, the training
loop (:mod:`.train`, :mod:`.settings`, :mod:`.distributed`) and self-describing checkpoints."""
