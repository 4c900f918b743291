"""One mapping from keys to display names, used by every table, figure and log line."""

DATABASE = {"ckplus": "CK+", "oulu": "Oulu-CASIA", "mmi": "MMI"}

MODEL = {
    "no_mtl": "FERSNet w/o MTL",
    "no_convflu": "FERSNet w/o ConvFLU",
    "fersnet": "FERSNet",
    "fes_da": "FERSNet w. FES-DA",
    "fes_da_real": "FERSNet + fine-tuning on real faces",
    "stargan": "StarGAN",
    "judge": "Judge (ResNet-18)",
}

# In synthesis tables no_mtl stands for its single-task FES generator.
GENERATOR = {
    "fersnet": "FERSNet",
    "no_mtl": "Single-task FES",
    "no_convflu": "FERSNet w/o ConvFLU",
    "stargan": "StarGAN",
}

# The synthesis table's reference rows (fersnet.metrics.score.REFERENCE_ROWS).
SYNTHESIS_REFERENCE = {
    "copy_input": "Copy input",
    "real_target": "Real target",
}

EXPRESSION = {
    "neutral": "Neutral", "anger": "Anger", "contempt": "Contempt", "disgust": "Disgust",
    "fear": "Fear", "happy": "Happy", "sadness": "Sadness", "surprise": "Surprise",
}
EXPRESSION_SHORT = {
    "neutral": "Ne", "anger": "An", "contempt": "Co", "disgust": "Di",
    "fear": "Fe", "happy": "Ha", "sadness": "Sa", "surprise": "Su",
}
