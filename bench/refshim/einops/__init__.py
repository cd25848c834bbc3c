"""einops.rearrange for the single pattern upstream's Perceiver uses."""


def rearrange(t, pattern):
    if pattern.replace(" ", "") == "ijh->()hij":
        return t.permute(2, 0, 1).unsqueeze(0)
    raise NotImplementedError("refshim einops: pattern " + pattern)
