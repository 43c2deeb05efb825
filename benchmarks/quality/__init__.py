"""Retrieval quality on public datasets: does the engine find the gold evidence?"""
