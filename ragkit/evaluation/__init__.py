"""Built-in evaluation: is the LLM2Vec encoder better than the causal baseline, on your data?"""
