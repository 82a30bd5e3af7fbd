"""Custom taggers from a few examples: features x classifiers, selection, storage.

``POST /v1/models`` sends labelled examples; :mod:`.creation` embeds them with the loaded
networks (:mod:`.features`: every embedding output, MFCC statistics, random-weight CNNs), picks a
classifier (:mod:`.heads`) and a feature by cross-validation with an honest nested estimate
(:mod:`.selection`), and stores the result as JSON plus arrays (:mod:`.storage`); the
:mod:`.registry` serves the stored models and follows the shared folder. See
docs/custom-models.md.
"""
