"""The reproduction machinery: profiles (:mod:`~cnfkit.repro.profiles`), results JSON with provenance
(:mod:`~cnfkit.repro.results`), the papers' numbers (:mod:`~cnfkit.repro.paper`), the claims check
(:mod:`~cnfkit.repro.claims`), tables (:mod:`~cnfkit.repro.report`), ``make reproduce``
(:mod:`~cnfkit.repro.reproduce`) and the notebooks' sliders (:mod:`~cnfkit.repro.interactive`).
Nothing in the library imports it."""
