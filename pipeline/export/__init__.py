"""The challenge's records folder: a self-contained train_gpt.py generated from pgolf's modules
(`script`), the program it runs (`run`), and the folder around it (`records`)."""
