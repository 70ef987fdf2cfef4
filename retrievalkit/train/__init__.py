"""retrievalkit.train"""
