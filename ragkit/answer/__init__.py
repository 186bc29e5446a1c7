"""Short answers from retrieved passages: extractive by default, generated only when grounded.

from ragkit.answer import answer
result = answer(".ragkit", "how do I resume training?")
print(result.text)            # sentences of the passages, each citing [n]
print(result.citations)       # [n] -> source, lines, heading
"""

import sys
import types

from ragkit.answer.api import MODES, Answer, Citation, answer

__all__ = ["MODES", "Answer", "Citation", "answer"]


class _CallableModule(types.ModuleType):
    """Lets ``ragkit.answer(index, query)`` work although ``ragkit.answer`` is this package."""

    def __call__(self, *args, **kwargs) -> Answer:
        return answer(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
