class _Output(dict):
    """Attribute and index access, as transformers' ModelOutput."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.__dict__ = self

    def __getitem__(self, k):
        if isinstance(k, int):
            return [v for v in self.values() if v is not None][k]
        return super().__getitem__(k)


class CausalLMOutputWithCrossAttentions(_Output):
    pass


class BaseModelOutputWithPast(_Output):
    pass
