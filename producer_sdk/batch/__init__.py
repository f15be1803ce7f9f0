"""The file formats of batch jobs: input files read into rows (``input_reader``) and
results written as OpenAI's batch output, vectors or the corpus file (``result_writer``)."""
