"""Tools for trained networks: inference (load and score), predict, figures (the paper's figures 3 and 4 of
a run), convert (torchvision weights), flops."""
