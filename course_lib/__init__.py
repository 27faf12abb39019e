"""course_lib: the tested package behind the course *BERT for e-commerce search and recommendation*.

One module per pipeline stage; each lesson imports the module of its stage.
"""
__version__ = "0.1.0"
