"""Raw inputs to datasets: verified correct/buggy pairs, the code corpus, the tokenizer, the sandbox."""
