"""Training: the memory and hyperparameter planner (`plan`) and, later, the LoRA/QLoRA recipes (`tune`).

`arch` reads a model's architecture without loading its weights; `plan` turns it, the task's data and a device
into a memory estimate and hyperparameters with a reason for each choice (pure functions, no I/O).
"""
