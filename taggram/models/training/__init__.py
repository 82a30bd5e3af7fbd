"""One trainer for every registered architecture: labelled data or distillation from a teacher."""
