"""Splitting and joining Lambda function ARNs, as the SDK's Lambda client uses them."""


class FunctionArnFields:
    """`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`, or a bare function name.

    A bare name has no region or account; it is kept as given so that the core can match it.
    """

    def __init__(self, function_arn):
        if not isinstance(function_arn, str) or not function_arn:
            raise ValueError("FunctionName must be a non-empty string")
        parts = function_arn.split(":")
        if len(parts) >= 7 and parts[0] == "arn" and parts[2] == "lambda" and parts[5] == "function":
            if len(parts) > 8:
                raise ValueError("Cannot parse given function ARN: {}".format(function_arn))
            self.region = parts[3]
            self.account_id = parts[4]
            self.name = parts[6]
            self.qualifier = parts[7] if len(parts) == 8 else None
            self.unqualified_arn = ":".join(parts[:7])
        elif len(parts) == 1:
            self.region = self.account_id = None
            self.name = function_arn
            self.qualifier = None
            self.unqualified_arn = function_arn
        else:
            raise ValueError("Cannot parse given function ARN: {}".format(function_arn))

    @staticmethod
    def build_arn_qualifier(qualifier):
        # Lambda's $LATEST is what an unqualified name means.
        return qualifier if qualifier else None

    @staticmethod
    def build_function_arn(unqualified_arn, qualifier=None):
        if qualifier:
            return "{}:{}".format(unqualified_arn, qualifier)
        return unqualified_arn
