"""The logits processors T3 uses, with transformers 5's semantics."""
import torch


class LogitsProcessorList(list):
    def __call__(self, input_ids, scores):
        for p in self:
            scores = p(input_ids, scores)
        return scores


class RepetitionPenaltyLogitsProcessor:
    def __init__(self, penalty):
        self.penalty = float(penalty)

    def __call__(self, input_ids, scores):
        s = torch.gather(scores, 1, input_ids)
        s = torch.where(s < 0, s * self.penalty, s / self.penalty)
        return scores.scatter(1, input_ids, s)


class TemperatureLogitsWarper:
    def __init__(self, temperature):
        self.temperature = float(temperature)

    def __call__(self, input_ids, scores):
        return scores / self.temperature


class TopKLogitsWarper:
    def __init__(self, top_k, filter_value=-float("inf"), min_tokens_to_keep=1):
        self.top_k = max(int(top_k), min_tokens_to_keep)
        self.filter_value = filter_value

    def __call__(self, input_ids, scores):
        k = min(self.top_k, scores.size(-1))
        remove = scores < torch.topk(scores, k)[0][..., -1, None]
        return scores.masked_fill(remove, self.filter_value)


class TopPLogitsWarper:
    def __init__(self, top_p, filter_value=-float("inf"), min_tokens_to_keep=1):
        self.top_p = float(top_p)
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids, scores):
        sorted_logits, sorted_idx = torch.sort(scores, descending=False)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cum <= (1 - self.top_p)
        remove_sorted[..., -self.min_tokens_to_keep:] = 0
        remove = remove_sorted.scatter(1, sorted_idx, remove_sorted)
        return scores.masked_fill(remove, self.filter_value)


class MinPLogitsWarper:
    def __init__(self, min_p, filter_value=-float("inf"), min_tokens_to_keep=1):
        self.min_p = float(min_p)
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids, scores):
        probs = torch.softmax(scores, dim=-1)
        top = probs.amax(dim=-1, keepdim=True)
        remove = probs < self.min_p * top
        sorted_idx = torch.argsort(scores, descending=True, dim=-1)
        remove_sorted = torch.gather(remove, -1, sorted_idx)
        remove_sorted[..., : self.min_tokens_to_keep] = False
        remove = remove_sorted.scatter(1, sorted_idx, remove_sorted)
        return scores.masked_fill(remove, self.filter_value)
