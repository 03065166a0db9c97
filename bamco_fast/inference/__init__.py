"""Answer questions with a trained VQA run: load its folder, decode the images, generate in batches.

``load_run(RUN)`` rebuilds the model a run folder describes (its knowledge space or plain towers, the
intra-class bank of its training records, the LLM with its adapters); ``answer_questions`` answers
``(image, question, qid)`` items in batches. ``python -m bamco_fast.predict`` and the training stage's
evaluation both go through here.
"""

from .answering import answer_questions
from .run_folder import (
    MODEL_DIR,
    RUN_INFO,
    LoadedRun,
    RunError,
    load_knowledge_space,
    load_run,
    read_run_info,
)

__all__ = [
    "MODEL_DIR",
    "RUN_INFO",
    "LoadedRun",
    "RunError",
    "answer_questions",
    "load_knowledge_space",
    "load_run",
    "read_run_info",
]
