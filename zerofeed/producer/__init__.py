"""Producer side: decode, augment, worker loop, supervisor, CLI.

Never imports keras or tensorflow.
"""
